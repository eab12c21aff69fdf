"""Singer tap for Tenios call detail records (CDRs)."""
