"""`cnai cost`: what a deployment costs, from the synthesized templates and one file of unit prices."""
