//! `dashboard:url` and `open`: the dashboard's address with its token (in the URL's fragment,
//! which browsers never send to a server or put in a Referer), and `open` hands it to the
//! desktop's opener when there is one.

use super::Ctx;
use roboku_wire::{DashboardInfo, API_PREFIX};
use serde_json::Value;

/// The URL the operator opens: the token rides in `#token=`, read by the page itself.
pub fn url_with_token(info: &DashboardInfo) -> String {
    format!("{}#token={}", info.url, info.token)
}

async fn info(ctx: &Ctx) -> anyhow::Result<Option<DashboardInfo>> {
    let v: Value = ctx.client.get(&format!("{API_PREFIX}/dashboard")).await?;
    ctx.typed(v)
}

pub async fn url(ctx: &Ctx) -> anyhow::Result<()> {
    if let Some(i) = info(ctx).await? {
        crate::output::outln!("{}", url_with_token(&i))?;
    }
    Ok(())
}

pub async fn open(ctx: &Ctx) -> anyhow::Result<()> {
    let Some(i) = info(ctx).await? else {
        return Ok(());
    };
    let url = url_with_token(&i);
    crate::output::outln!("{url}")?;
    // A robot usually has no desktop: printing is the main job, opening a bonus.
    let opened = std::process::Command::new("xdg-open")
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !opened {
        eprintln!("(no browser to open here: open the URL above on your laptop or phone)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_goes_in_the_fragment() {
        let i = roboku_wire::DashboardInfo {
            url: "http://127.0.0.1:7070/".into(),
            token: "ab".into(),
            loopback: true,
        };
        assert_eq!(super::url_with_token(&i), "http://127.0.0.1:7070/#token=ab");
    }
}
