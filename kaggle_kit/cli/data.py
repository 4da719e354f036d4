"""`kit data`."""

from __future__ import annotations

from pathlib import Path

import typer

from kaggle_kit.cli.app import app, say


@app.command()
def data(
    competition: str = typer.Argument(..., help="Competition plugin name (see `kit list`), e.g. ell."),
    out: Path = typer.Option(None, help="Data folder to fill [default: data/<competition>/, where `kit train` "
                                        "looks]."),
) -> None:
    """Download the competition's files with the Kaggle API into data/<competition>/, checked against the plugin.

    Needs Kaggle credentials (an API token in KAGGLE_API_TOKEN or ~/.kaggle/access_token, or a legacy
    kaggle.json / KAGGLE_USERNAME + KAGGLE_KEY) and the competition's rules accepted on kaggle.com. A folder
    that is already complete is not downloaded again; files already there are never overwritten. USPPPM also
    gets the CPC titles (titles.csv of the Kaggle dataset xhlulu/cpc-codes, saved as cpc_titles.csv).
    """
    from kaggle_kit.data.download import download_data
    from kaggle_kit.registry import get_competition

    download_data(get_competition(competition), out, log=say)
