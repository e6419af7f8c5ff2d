"""Single sign-on with OpenID Connect (issue 18): the provider's discovery document, the
authentication backends (the provider's, and passwords that NEOPAIN_LOCAL_LOGIN can switch off),
the sign-in, callback and sign-out views. Configuration: neopain_site/sso_settings.py, docs/sso.md."""
