"""One router per resource: predictions, health, model, metrics."""
