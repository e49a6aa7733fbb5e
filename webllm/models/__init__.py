"""Model families. Each module turns an ImportedModel into package weights and an op graph."""
