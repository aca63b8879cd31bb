"""Conformance runners: ``golden`` (the policy math against the golden vectors, float64 and float32) and
``official`` (loader + sampler against cases recorded with the official π-Flow pipelines)."""
