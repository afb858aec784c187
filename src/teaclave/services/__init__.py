"""The platform's services, one package each, plus the supervisor."""
