"""Access: bearer tokens of the prediction API (``tokens``) and the console's operator
passwords (``passwords``, scrypt)."""
