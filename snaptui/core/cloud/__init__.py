"""Cloud credentials: clouds.yaml, a forwarded Keystone login, secret files' modes."""
