"""The small-compute study behind the README's verdicts: its protocol, jobs, records, statistics,
claims, report and figures (`python3 -m study --help`)."""
