"""The HTTP edge: Cinder's v3 backup API on pecan (see app.setup_app)."""
