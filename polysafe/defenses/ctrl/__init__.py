"""CTRL ("Buckle Up"): curate clean texts so that fine-tuning on them restores or protects safety.

revise (prompt + seed phrases) -> beam (search over revisions) -> scoring (perplexity, helpfulness, floor)
-> curate (grid sampling, cached in the store) -> stages (training-set composition) -> run (the pipeline).
"""
