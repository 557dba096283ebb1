"""CRM client and contact sync."""
