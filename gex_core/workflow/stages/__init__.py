"""One module per workflow stage: read inputs, call the library, write outputs.

Kept apart so each job script's source fingerprint covers only the modules it runs.
"""
