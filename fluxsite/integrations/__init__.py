"""One module per external service; nothing else in the project imports a vendor SDK.

- replicate_client: trainings, predictions, models, webhook verification (Replicate)
- huggingface_client: repos, uploads, downloads, whoami (Hugging Face Hub)
- stripe_client: checkout, billing portal, events, webhook verification (Stripe)
- storage: local files or S3/R2, signed expiring URLs
All of them raise errors.IntegrationError.
"""
