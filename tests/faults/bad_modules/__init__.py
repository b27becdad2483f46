"""Job modules that break in the ways a stray writer's job can: the malformed-jobs case
(``test_malformed_jobs.py``) names their functions in hand-written job hashes."""
