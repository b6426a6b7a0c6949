"""Payments: MPP challenges, credentials and receipts; the Stripe gateway; settlement."""
