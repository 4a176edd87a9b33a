"""Head office: the chain's visits, alerts and box status from every store, in PostgreSQL."""
