use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use audit_exporter::cli::{Cli, Command, ConfigCommand, DestinationCommand, IntegrityCommand};
use audit_exporter::commands::{self, DestinationAction, exit_code};
use audit_exporter::export::When;
use audit_exporter::settings::Settings;
use audit_exporter::{daemon, memory, telemetry};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    memory::tune_allocator();
    let cli = Cli::parse();
    let config = cli
        .config
        .as_ref()
        .and_then(|c| c.path())
        .map(Path::to_owned);
    let result = async {
        let settings = Settings::load(config.as_deref())?;
        telemetry::init(&settings.log);
        dispatch(cli.command, config, settings).await
    }
    .await;
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code(&error) as u8)
        }
    }
}

async fn dispatch(
    command: Command,
    cli_config: Option<std::path::PathBuf>,
    settings: Settings,
) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Migrate => commands::migrate(&settings, &mut out).await?,
        Command::Run => daemon::run(cli_config, settings).await?,
        Command::Export {
            destinations,
            if_due,
        } => {
            let when = if if_due { When::IfDue } else { When::Now };
            let summary = commands::export(&settings, &destinations, when, &mut out).await?;
            if summary.failed > 0 {
                return Ok(1);
            }
        }
        Command::Reexport {
            from,
            to,
            destinations,
            tenant,
        } => {
            let summary = commands::reexport(
                &settings,
                &destinations,
                (from, to),
                tenant.as_deref(),
                &mut out,
            )
            .await?;
            if summary.failed > 0 {
                out.flush()?;
                return Ok(1);
            }
        }
        Command::Verify { destinations } => {
            let summary = commands::verify(&settings, &destinations, &mut out).await?;
            if summary.failed > 0 {
                out.flush()?;
                return Ok(1);
            }
        }
        Command::Prune {
            before,
            older_than,
            dry_run,
        } => {
            let cutoff = match (before, older_than) {
                (Some(time), _) => commands::Cutoff::Before(time),
                (None, Some(age)) => commands::Cutoff::OlderThan(age),
                (None, None) => unreachable!("clap requires --before or --older-than"),
            };
            commands::prune(&settings, cutoff, dry_run, &mut out).await?
        }
        Command::Status { json } => commands::status(&settings, json, &mut out).await?,
        Command::Destination { command } => {
            let action = match command {
                DestinationCommand::List => DestinationAction::List,
                DestinationCommand::Cancel { name } => DestinationAction::Cancel { name },
                DestinationCommand::Reset { name, start } => {
                    DestinationAction::Reset { name, start }
                }
                DestinationCommand::Forget { name } => DestinationAction::Forget { name },
            };
            commands::destination(&settings, &action, &mut out).await?
        }
        Command::VerifyChain(args) => {
            let args = commands::VerifyChainArgs {
                destination: args.destination,
                url: args.url,
                public_keys: args.public_keys,
                endpoint: args.endpoint,
                region: args.region,
                from: args.from,
                to: args.to,
            };
            let code = commands::verify_chain(&settings, &args, &mut out).await?;
            out.flush()?;
            return Ok(code);
        }
        Command::Integrity {
            command: IntegrityCommand::PublicKey,
        } => commands::public_key(&settings, &mut out)?,
        Command::Append(args) => {
            let args = commands::AppendArgs {
                action: args.action,
                actor: args.actor,
                target: args.target,
                metadata: args.metadata,
                tenant: args.tenant,
                occurred_at: args.occurred_at,
                count: args.count,
            };
            commands::append(&settings, &args, &mut out).await?
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => commands::config_check(&settings, &mut out).await?,
    }
    out.flush()?;
    Ok(0)
}
