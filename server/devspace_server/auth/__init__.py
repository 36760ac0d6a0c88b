"""Who people are: local passwords and browser sign-in now; OAuth and upstream login later.

- `passwords`: argon2id hashing and the rules a new password must meet.
- `throttle`: counting failed sign-ins in the database, per account and per address.
- `sessions`: signed-in browsers (`WebSession` rows) and the current user.
- `csrf`: the token every state-changing form carries.
- `local`: the sign-in and sign-out pages for local accounts.
"""
