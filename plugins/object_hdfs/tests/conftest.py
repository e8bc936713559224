pytest_plugins = ["sbtest.fixtures"]
