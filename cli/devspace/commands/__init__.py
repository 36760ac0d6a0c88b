"""One module per verb; `devspace.main` imports each only when its command runs."""
