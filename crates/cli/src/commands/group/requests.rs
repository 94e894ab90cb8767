//! `e2ee group requests NAME`.

use e2ee_client_core::Client;
use serde_json::json;

use super::GroupArgs;
use crate::output::Output;
use crate::terminal_text;

/// Arguments of `group requests`.
pub(crate) type Args = GroupArgs;

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let requests = client.group_requests(&args.name).await?;
    let info = client.group_info(&args.name).await?;
    if requests.is_empty() && !out.json() {
        out.note(&format!(
            "no join requests wait in {}",
            super::hash_name(&info.title)
        ));
    }
    for request in requests {
        let text = if request.note.is_empty() {
            request.email.to_string()
        } else {
            terminal_text::message(request.email.as_str(), &request.note)
        };
        out.result(
            &text,
            &json!({
                "group": info.title,
                "peer": request.email,
                "note": request.note,
            }),
        )?;
    }
    Ok(())
}
