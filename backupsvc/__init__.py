"""backupsvc: a volume backup service that speaks the Cinder v3 backup API."""
