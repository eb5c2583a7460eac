"""cnai: the core library shared by training, serving, ingestion and the CLI.

Import-time is kept free of AWS calls and heavy frameworks: each submodule pulls in only what it needs,
so the predict Lambda never imports torch and the training job never imports the CDK.
"""

__version__ = "0.1.0"
