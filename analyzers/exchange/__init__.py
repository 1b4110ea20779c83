"""Exchange ProxyLogon (ED 21-02) log analyzers."""
