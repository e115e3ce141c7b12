"""Example sslkit plugin: a new modality, time series (the worked example of docs/plugins.md)."""
