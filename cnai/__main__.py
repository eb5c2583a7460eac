from cnai.cli import app

app(prog_name="cnai")
