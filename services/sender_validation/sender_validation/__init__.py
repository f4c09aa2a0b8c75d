"""The confirmation-link service for external sender addresses (issue 12)."""
