//! External links (create, list, get, patch, revoke) and the sync change log (changes
//! with an opaque cursor, per-device status and cursor).

use scaidrive::remote::{Cursor, Destination, LinkOptions, NewLink};

use crate::harness::{Env, api_total};

#[tokio::test]
async fn link_lifecycle() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let folder = c.create_folder(&env.share, None, "Shared batch").await?;
    let link = c
        .create_link(&NewLink {
            resource_type: "folder".into(),
            resource_id: folder.id.clone(),
            share_id: env.share.clone(),
            link_type: "DOWNLOAD".into(),
            options: LinkOptions {
                password: Some("hunter2".into()),
                expires_in_days: Some(14),
                custom_name: Some("Shared batch".into()),
                ..LinkOptions::default()
            },
        })
        .await?;
    assert!(link.id.starts_with("lnk_"), "{link:?}");
    assert!(link.password_required);
    assert_eq!(link.status.as_deref(), Some("active"));
    assert_eq!(link.resource_id, folder.id);
    assert!(
        link.url
            .as_deref()
            .is_some_and(|u| u.starts_with(&env.url) && u.contains("/share/")),
        "{link:?}"
    );
    assert!(link.expires_at.is_some());
    assert!(!format!("{link:?}").contains("hunter2"));

    let listed = c.links(Some(&env.share)).await?;
    assert_eq!(
        listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        vec![link.id.as_str()]
    );
    assert_eq!(c.links(None).await?.len(), 1);

    let patched = c
        .update_link(
            &link.id,
            &LinkOptions {
                max_downloads: Some(5),
                custom_name: Some("Renamed".into()),
                ..LinkOptions::default()
            },
        )
        .await?;
    assert_eq!(
        (patched.max_downloads, patched.custom_name.as_deref()),
        (Some(5), Some("Renamed"))
    );
    assert_eq!(c.link(&link.id).await?.max_downloads, Some(5));

    env.reset_stats().await;
    c.revoke_link(&link.id).await?;
    assert_eq!(
        env.count("DELETE /api/v1/external/links/{link_id}").await,
        1
    );
    match c.link(&link.id).await {
        Ok(l) => assert_eq!(l.status.as_deref(), Some("revoked")),
        Err(e) => assert!(
            e.is_gone() || e.status().map(|s| s.as_u16()) == Some(404),
            "{e}"
        ),
    }
    Ok(())
}

#[tokio::test]
async fn change_feed_cursor_and_device_status() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    // Without a cursor the feed starts at "now".
    let head = c.changes(&env.share, None, None).await?;
    assert!(head.changes.is_empty());
    assert!(!head.has_more);

    let folder = c.create_folder(&env.share, None, "A").await?;
    let path = env.write("f.txt", b"data");
    let file = c
        .upload_file(
            &Destination::new(&env.share, Some(&folder.id), "f.txt"),
            &path,
            None,
        )
        .await?;
    c.rename_file(&file.id, "g.txt").await?;

    // Page through with a small limit, sending the cursor back verbatim.
    let mut cursor = head.cursor.clone();
    let mut seen = Vec::new();
    loop {
        let page = c.changes(&env.share, Some(&cursor), Some(1)).await?;
        assert!(page.changes.len() <= 1);
        seen.extend(
            page.changes
                .iter()
                .map(|ch| (ch.change_type.clone(), ch.resource_id.clone())),
        );
        cursor = page.cursor;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            ("created".to_string(), folder.id.clone()),
            ("created".to_string(), file.id.clone()),
            ("renamed".to_string(), file.id.clone()),
        ]
    );
    let tail = c.changes(&env.share, Some(&cursor), None).await?;
    assert!(tail.changes.is_empty(), "nothing after the last cursor");

    // Server-side cursor per device: a new device starts at the head; we store ours.
    let st = c.sync_status(&env.share, "dev_test").await?;
    assert_eq!(
        st.cursor_position, cursor,
        "a new device starts at the current head"
    );
    let ack = c.set_cursor(&env.share, "dev_test", &head.cursor).await?;
    assert_eq!(ack.cursor_position, head.cursor);
    assert_eq!(
        c.sync_status(&env.share, "dev_test").await?.cursor_position,
        head.cursor
    );

    // A malformed cursor is the caller's bug: permanent, not retried.
    env.reset_stats().await;
    let e = c
        .changes(&env.share, Some(&Cursor("not-a-cursor".into())), None)
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert_eq!(api_total(&env.stats().await), 1);
    Ok(())
}
