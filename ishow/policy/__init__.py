"""Pure message policies: filters, utterance composition (templates, voice choice)."""
