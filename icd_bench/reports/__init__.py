"""Reports: statistics, tables and figures from scored runs and study data."""
