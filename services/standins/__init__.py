"""Stand-ins for third parties in compose.yaml (a model API); never deployed for real."""
