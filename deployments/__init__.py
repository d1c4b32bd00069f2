"""What prefect.yaml cannot express: bootstrap of pools, limits, blocks; the local runner."""
