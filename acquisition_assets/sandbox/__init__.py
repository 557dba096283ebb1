"""Local stand-ins for the email provider and the CRM, served over HTTP on loopback."""
