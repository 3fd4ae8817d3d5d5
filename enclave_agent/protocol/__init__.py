"""The agent's protocol: onboarding, share-exchange rounds, reveal and inference answers."""
