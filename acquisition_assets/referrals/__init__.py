"""Referral invites and referral sign-ups."""
