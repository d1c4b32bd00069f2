"""Training: what a challenger learns from and when it replaces the champion.

``windows`` chooses the training window (the batches since the last change, or the
default tail); ``trainer`` fits and evaluates the scikit-learn pipeline; ``promotion`` is
the gate (the challenger must beat the champion on the same held-out rows by a significant
margin); ``registry`` records runs and versions in MLflow and moves the ``champion`` and
``previous`` aliases.
"""
