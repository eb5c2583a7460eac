"""CDK: one stack per concern, reusable constructs, typed settings, cdk-nag on everything."""
