"""Building blocks of bench/run.py: servers and services, inputs, one module per benchmark."""
