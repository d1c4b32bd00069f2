"""Monitoring: is the champion still right for the data it sees?

``data_drift`` compares the current window with the reference window feature by feature
(KS statistic, PSI, chi-squared); ``concept_drift`` tests whether the champion's error rate
on the newest labelled batch rose significantly; ``serving_monitor`` watches the served
traffic before labels arrive (input and prediction drift) and ``estimation`` estimates its
accuracy meanwhile (CBPE). Only concept drift triggers a retrain by default
(``ia_continu.loop.policy``).
"""
