"""Pure domain logic (no database, no Flask): identifiers, synthetic data."""
