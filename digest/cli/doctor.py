"""`digest doctor`: is this installation able to send?"""

from __future__ import annotations

import click

from digest.cli.common import AppContext, pass_app


@click.command()
@pass_app
def doctor(app: AppContext) -> None:
    """Check this installation can send: settings, data, database, Redis, SMTP, model.

    Prints the settings in force (secrets masked), then one line per check: ok, warn (works,
    but look) or FAIL (fix it; the exit code is then 1).

    \b
    Example:
      digest doctor
    """
    from digest.doctor import examine, masked_settings

    click.echo("settings in force:")
    for name, value in masked_settings(app.settings).items():
        click.echo(f"  DIGEST_{name.upper()}={value}")
    click.echo("checks:")
    findings = list(examine(app.settings))
    for finding in findings:
        click.echo(f"  {finding.level:<4}  {finding.check:<14} {finding.detail}")
    failed = [f.check for f in findings if f.level == "FAIL"]
    if failed:
        raise click.ClickException(
            f"{len(failed)} check(s) failed ({', '.join(failed)}): see above"
        )
