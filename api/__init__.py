"""IA Continu prediction API: serves the MLflow ``champion``; never trains, never imports Prefect."""
