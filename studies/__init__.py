"""The pre-registered comparison of VKD against a tuned image-only baseline: its runs as configs
(`studies/configs/prereg.py`), the command that trains and tabulates them (`python -m
studies.compare --study=prereg`), its statistics (`prereg.py`), the latent probes
(`probe_latent.py`) and the committed per-run records (`results/prereg/`). Run each module as
`python -m studies.<name>` from the repository root."""
