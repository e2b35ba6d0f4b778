"""Training: config-driven trainer."""
