"""Lead intake: CSV import, validation and the new_leads asset."""
