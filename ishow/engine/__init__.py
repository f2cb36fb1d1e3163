"""Speech engines. Importing this package stays cheap: heavy modules load lazily in ``registry``."""
