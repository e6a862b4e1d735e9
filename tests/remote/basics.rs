//! Typed calls on the routes every ScaiDrive deployment has: health, the current user and
//! shares, and folders (including create-or-adopt and local name validation).

use scaidrive::remote::{ErrorKind, ItemKind, Placed};

use crate::harness::{Env, api_total};

#[tokio::test]
async fn health_user_and_shares() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    assert_eq!(c.health().await?.status, "healthy");
    let me = c.me().await?;
    assert_eq!(me.id, env.server.info.user_id);
    assert_eq!(
        me.tenant_id.as_deref(),
        Some(env.server.info.tenant_id.as_str())
    );
    let shares = c.my_shares().await?;
    let s = shares
        .iter()
        .find(|s| s.id == env.share)
        .expect("default share listed");
    assert_eq!(s.role.as_deref(), Some("owner"));
    assert!(s.can_write());
    let share = c.share(&env.share).await?;
    assert_eq!(share.name, "Test Share");
    assert!(!share.is_deleted);
    let missing = c.share("shr_nope").await.unwrap_err();
    assert_eq!(missing.status().map(|s| s.as_u16()), Some(404), "{missing}");
    assert!(!missing.is_transient());
    Ok(())
}

#[tokio::test]
async fn folder_lifecycle() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let a = c.create_folder(&env.share, None, "A").await?;
    assert_eq!(
        (a.name.as_str(), a.parent_id.as_deref(), a.path.as_str()),
        ("A", None, "/A")
    );
    let b = c.create_folder(&env.share, Some(&a.id), "B").await?;
    assert_eq!(b.path, "/A/B");
    assert_eq!(c.folder(&b.id).await?, b);

    let root = c.children(&env.share, None).await?;
    assert_eq!(
        root.find("A", ItemKind::Folder).map(|i| i.id.as_str()),
        Some(a.id.as_str())
    );
    let in_a = c.children(&env.share, Some(&a.id)).await?;
    assert_eq!(in_a.total, 1);
    assert_eq!(in_a.path, "/A");

    let renamed = c.rename_folder(&b.id, "C").await?;
    assert_eq!(renamed.path, "/A/C");
    let moved = c.move_folder(&b.id, None).await?;
    assert_eq!((moved.parent_id, moved.path.as_str()), (None, "/C"));
    let back = c.move_folder(&b.id, Some(&a.id)).await?;
    assert_eq!(back.path, "/A/C");

    c.delete_folder(&b.id, false).await?;
    assert!(c.children(&env.share, Some(&a.id)).await?.items.is_empty());
    let trash = c.children_with(&env.share, Some(&a.id), true).await?;
    assert_eq!(
        trash.items.first().and_then(|i| i.is_deleted),
        Some(true),
        "{trash:?}"
    );
    let gone = c.folder(&b.id).await.unwrap_err();
    assert!(gone.is_gone(), "soft-deleted folder answers 410: {gone}");
    c.delete_folder(&a.id, true).await?;
    assert_eq!(
        c.folder(&a.id)
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(404)
    );
    Ok(())
}

#[tokio::test]
async fn create_folder_or_adopt_costs_one_call_and_adopts_on_conflict() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let parent = c.create_folder(&env.share, None, "Parent").await?;
    env.reset_stats().await;
    let first = c
        .create_folder_or_adopt(&env.share, Some(&parent.id), "Docs")
        .await?;
    let Placed::Created(created) = first else {
        panic!("expected a new folder: {first:?}")
    };
    let stats = env.stats().await;
    assert_eq!(api_total(&stats), 1, "happy path is one request: {stats}");

    // As after a crash between create and journal: the folder exists already.
    let again = c
        .create_folder_or_adopt(&env.share, Some(&parent.id), "Docs")
        .await?;
    assert_eq!(again, Placed::Adopted(created.clone()));
    // Same name elsewhere is a different folder.
    let elsewhere = c.create_folder_or_adopt(&env.share, None, "Docs").await?;
    assert!(
        matches!(&elsewhere, Placed::Created(f) if f.id != created.id),
        "{elsewhere:?}"
    );
    // The detail error shape has no code and no details: adoption still works.
    env.settings(serde_json::json!({ "error_shape": "detail" }))
        .await;
    let detail = c
        .create_folder_or_adopt(&env.share, Some(&parent.id), "Docs")
        .await?;
    assert_eq!(detail, Placed::Adopted(created));
    Ok(())
}

#[tokio::test]
async fn invalid_names_never_reach_the_server() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let folder = c.create_folder(&env.share, None, "ok").await?;
    env.reset_stats().await;
    for bad in ["", ".", "..", "a/b", "nul\0", " lead", "trail ", "\ttab"] {
        let e = c.create_folder(&env.share, None, bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{bad:?}: {e}");
        assert_eq!(e.code(), Some("INVALID_PATH"));
        assert!(e.to_string().contains("invalid name"), "{e}");
        let e = c.rename_folder(&folder.id, bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName);
        let e = c
            .create_folder_or_adopt(&env.share, None, bad)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName);
    }
    let stats = env.stats().await;
    assert_eq!(
        api_total(&stats),
        0,
        "no request for an invalid name: {stats}"
    );
    Ok(())
}
