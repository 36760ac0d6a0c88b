"""Who people are: local passwords and browser sign-in now; OAuth and upstream login later.

- `passwords`: argon2id hashing and the rules a new password must meet.
- `throttle`: counting failed sign-ins in the database, per account and per address.
- `sessions`: signed-in browsers (`WebSession` rows) and the current user.
- `csrf`: the token every state-changing form carries.
- `local`: the sign-in and sign-out pages for local accounts.
- `scopes`: what a token may do (`spaces`, `ssh`, `admin`), and who may hold `admin`.
- `tokens`: API tokens (hashed), revocation, and the Bearer check of every API request.
- `oauth`, `grants`: the OAuth 2.0 authorization server for the CLI (Authlib).
- `consent`: the consent and device verification pages.
"""
