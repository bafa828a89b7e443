"""OneRoster 1.2 (1EdTech) CSV Binding 1.2.1: the files' columns, building them from the SIS,
delta state, and the validator every export passes before it leaves."""
