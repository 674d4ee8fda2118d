//! The demo catalog and stock administration used by `orderflow catalog` and `orderflow stock`.

use orderflow_activities::db::Db;
use orderflow_activities::inventory::{self, StockLevel};
use orderflow_activities::orders::{self, CatalogItem};
use orderflow_domain::{Currency, Money, Sku};

/// (sku, name, price in major units, currency, initial stock)
const DEMO: &[(&str, &str, &str, &str, i64)] = &[
    ("TEE-RED-M", "Red T-shirt, size M", "19.99", "USD", 100),
    ("MUG-LOGO", "Logo mug", "12.50", "USD", 50),
    ("HOODIE-BLK-L", "Black hoodie, size L", "49.00", "USD", 20),
    ("STICKER-PACK", "Sticker pack", "3.99", "USD", 500),
    (
        "FLASH-DEAL",
        "Flash-sale gadget (limited)",
        "9.99",
        "USD",
        10,
    ),
    // Priced in yuan: WeChat Pay and Alipay take CNY.
    (
        "TEA-LONGJING",
        "West Lake Longjing tea, 250 g",
        "168.00",
        "CNY",
        200,
    ),
    ("MOONCAKE-BOX", "Mooncake gift box", "88.80", "CNY", 100),
];

/// Adds the demo catalog. Prices are (re)set; stock is only set for SKUs that have none yet, so
/// seeding twice never wipes real stock movements.
pub async fn seed_demo(db: &Db) -> anyhow::Result<Vec<(CatalogItem, StockLevel)>> {
    let mut seeded = Vec::new();
    for (sku, name, price, currency, stock) in DEMO {
        let item = CatalogItem {
            sku: Sku::parse(*sku)?,
            name: (*name).to_owned(),
            price: Money::parse_major(price, Currency::parse(currency)?)?,
        };
        orders::upsert_catalog_item(db, &item).await?;
        let level = match inventory::level(db, &item.sku).await? {
            Some(level) => level,
            None => inventory::set_total(db, &item.sku, *stock).await?,
        };
        seeded.push((item, level));
    }
    Ok(seeded)
}

/// Why a SKU's stock could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SetStockError {
    #[error("stock cannot be negative (got {0})")]
    Negative(i64),
    #[error("unknown SKU {0}: add it to the catalog first")]
    UnknownSku(Sku),
    /// Below what is reserved or sold, or the database failed.
    #[error(transparent)]
    Inventory(#[from] inventory::InventoryError),
    #[error(transparent)]
    Catalog(#[from] orders::OrderError),
}

/// Sets a SKU's total stock (`orderflow stock set`, `PUT /v1/stock/{sku}`). The SKU must be in
/// the catalog.
pub async fn set_stock(db: &Db, sku: &Sku, total: i64) -> Result<StockLevel, SetStockError> {
    if total < 0 {
        return Err(SetStockError::Negative(total));
    }
    let known = orders::catalog(db)
        .await?
        .into_iter()
        .any(|i| &i.sku == sku);
    if !known {
        return Err(SetStockError::UnknownSku(sku.clone()));
    }
    Ok(inventory::set_total(db, sku, total).await?)
}
