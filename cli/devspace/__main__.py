"""`python -m devspace`: the `devspace` command (`ssh-config` starts the proxy this way, so the
ProxyCommand names the very interpreter and installation that wrote it)."""

from devspace.entry import main

if __name__ == "__main__":
    main()
