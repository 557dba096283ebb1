"""Nurturing sequences, email sends and engagement tracking."""
