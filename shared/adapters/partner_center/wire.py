"""Partner Center's resources as typed models, with Partner Center's own (camelCase) field names.

These mirror the REST API's JSON so the client can parse and send them unchanged. Unknown fields
are kept (`extra="allow"`): Microsoft adds fields without notice, and a PATCH must send the whole
subscription back, including fields this code does not know about.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def _as_utc(value: datetime) -> datetime:
    # Partner Center usually sends "...Z", but some resources (and the price sheet) send naive
    # timestamps that are meant as UTC; never let a naive datetime into the domain.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""A datetime that is always aware and in UTC after validation."""


class PartnerCenterModel(BaseModel):
    """Base of every Partner Center resource: camelCase on the wire, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
    )

    def to_wire(self, *, as_read: bool = False) -> dict[str, Any]:
        """The JSON body Partner Center expects, camelCase.

        A new resource goes without nulls; `as_read` sends a resource back as it was read
        (explicit nulls kept, fields never set left out) plus whatever was changed since, which
        is what a whole-object PATCH needs.
        """
        if as_read:
            return self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ResourceAttributes(PartnerCenterModel):
    """`attributes` on every resource; `etag` is what If-Match needs."""

    etag: str | None = None
    object_type: str | None = None


class Link(PartnerCenterModel):
    """One hypermedia link (`links.next`, `links.self`)."""

    uri: str | None = None
    method: str | None = None
    headers: list[dict[str, str]] = Field(default_factory=list)


class ResourceLinks(PartnerCenterModel):
    """The `links` object of a resource or a collection."""

    self_: Link | None = Field(None, alias="self")
    next: Link | None = None
    previous: Link | None = None


ItemT = TypeVar("ItemT")


class ResourceCollection(PartnerCenterModel, Generic[ItemT]):
    """A page of a collection: `{totalCount, items, links, continuationToken}`."""

    total_count: int | None = None
    items: list[ItemT] = Field(default_factory=list)
    continuation_token: str | None = None
    links: ResourceLinks | None = None

    def next_page_token(self) -> str | None:
        """The continuation token for the next page, from the body or from `links.next`."""
        if self.continuation_token:
            return self.continuation_token
        if self.links is not None and self.links.next is not None:
            for header in self.links.next.headers:
                if header.get("key", "").lower() == "ms-continuationtoken":
                    return header.get("value") or None
        return None


# --- customers -------------------------------------------------------------------------------


class Address(PartnerCenterModel):
    """A postal address as Partner Center stores it."""

    country: str | None = None
    region: str | None = None
    city: str | None = None
    state: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    address_line3: str | None = None
    postal_code: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone_number: str | None = None


class CompanyProfile(PartnerCenterModel):
    """`companyProfile`: the tenant and its domain (`xyz.onmicrosoft.com`)."""

    tenant_id: str | None = None
    domain: str | None = None
    company_name: str | None = None
    organization_registration_number: str | None = None
    email: str | None = None


class BillingProfile(PartnerCenterModel):
    """`billingProfile`: who is billed and where."""

    id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    culture: str | None = None
    language: str | None = None
    company_name: str | None = None
    default_address: Address | None = None


class Customer(PartnerCenterModel):
    """A customer tenant of the partner (also the body of `POST /v1/customers`)."""

    id: str | None = None
    commerce_id: str | None = None
    company_profile: CompanyProfile | None = None
    billing_profile: BillingProfile | None = None
    relationship_to_partner: str | None = None
    allow_delegated_access: bool | None = None
    associated_partner_id: str | None = None
    custom_domains: list[str] | None = None
    attributes: ResourceAttributes | None = None


class RelationshipRequest(PartnerCenterModel):
    """The link a customer's admin opens to accept the partner as its reseller."""

    url: str


# --- catalog ---------------------------------------------------------------------------------


class ItemType(PartnerCenterModel):
    """`productType` of a product."""

    id: str | None = None
    display_name: str | None = None
    sub_type: ItemType | None = None


class Product(PartnerCenterModel):
    """A catalog product (e.g. `CFQ7TTC0LH18`, Microsoft 365 Business Basic)."""

    id: str
    title: str | None = None
    description: str | None = None
    product_type: ItemType | None = None
    is_microsoft_product: bool | None = None
    publisher_name: str | None = None


class Sku(PartnerCenterModel):
    """A SKU of a product: seat limits, trial flag, billing cycles."""

    id: str
    product_id: str | None = None
    title: str | None = None
    description: str | None = None
    minimum_quantity: int | None = None
    maximum_quantity: int | None = None
    is_trial: bool | None = None
    supported_billing_cycles: list[str] = Field(default_factory=list)
    purchase_prerequisites: list[str] = Field(default_factory=list)
    dynamic_attributes: dict[str, Any] | None = None


class RefundOption(PartnerCenterModel):
    """One refund step of a cancellation policy (`type`, `expiresAfter` as ISO duration)."""

    type: str | None = None
    sequence_id: int | None = None
    expires_after: str | None = None


class CancellationPolicy(PartnerCenterModel):
    """A term's cancellation policy."""

    refund_options: list[RefundOption] = Field(default_factory=list)


class Term(PartnerCenterModel):
    """A purchasable term of an availability (`P1M`/`P1Y`/`P3Y` × billing cycle)."""

    duration: str | None = None
    description: str | None = None
    billing_cycle: str | None = None
    cancellation_policies: list[CancellationPolicy] = Field(default_factory=list)


class Availability(PartnerCenterModel):
    """What can be bought for a SKU in a country and segment; `catalogItemId` goes in a cart."""

    id: str
    product_id: str | None = None
    sku_id: str | None = None
    catalog_item_id: str | None = None
    country: str | None = None
    segment: str | None = None
    is_purchasable: bool | None = None
    is_renewable: bool | None = None
    terms: list[Term] = Field(default_factory=list)


class PriceSheetRow(BaseModel):
    """One row of the license-based price sheet (CSV columns are PascalCase)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    product_title: str | None = Field(None, alias="ProductTitle")
    product_id: str = Field(alias="ProductId")
    sku_id: str = Field(alias="SkuId")
    sku_title: str | None = Field(None, alias="SkuTitle")
    publisher: str | None = Field(None, alias="Publisher")
    sku_description: str | None = Field(None, alias="SkuDescription")
    unit_of_measure: str | None = Field(None, alias="UnitOfMeasure")
    term_duration: str | None = Field(None, alias="TermDuration")
    billing_plan: str | None = Field(None, alias="BillingPlan")
    market: str | None = Field(None, alias="Market")
    currency: str = Field(alias="Currency")
    unit_price: Decimal = Field(alias="UnitPrice")
    erp_price: Decimal | None = Field(None, alias="ERP Price")
    pricing_tier_range_min: Decimal | None = Field(None, alias="PricingTierRangeMin")
    pricing_tier_range_max: Decimal | None = Field(None, alias="PricingTierRangeMax")
    effective_start_date: UtcDatetime | None = Field(None, alias="EffectiveStartDate")
    effective_end_date: UtcDatetime | None = Field(None, alias="EffectiveEndDate")
    tags: str | None = Field(None, alias="Tags")
    segment: str | None = Field(None, alias="Segment")


# --- carts and orders ------------------------------------------------------------------------


class ParticipantType(StrEnum):
    """Who else took part in a transaction."""

    TRANSACTION_RESELLER = "TransactionReseller"


class CartLineItemParticipant(PartnerCenterModel):
    """`participants[]` on a cart line: the indirect reseller for a distributor's sale."""

    type: str = ParticipantType.TRANSACTION_RESELLER.value
    partner_id: str


class CartError(PartnerCenterModel):
    """A line error on a cart (e.g. 10001 invalid catalog item, 10015 too many seats)."""

    error_code: int | str | None = None
    error_description: str | None = None


class CartLineItem(PartnerCenterModel):
    """One line of a cart; `addonItems` buy add-ons together with their base offer."""

    id: int | None = None
    catalog_item_id: str
    friendly_name: str | None = None
    quantity: int
    currency_code: str | None = None
    billing_cycle: str | None = None
    term_duration: str | None = None
    participants: list[CartLineItemParticipant] = Field(default_factory=list)
    provisioning_context: dict[str, str] | None = None
    order_group: str | None = None
    addon_items: list[CartLineItem] = Field(default_factory=list)
    custom_term_end_date: UtcDatetime | None = None
    promotion_id: str | None = None
    error: CartError | None = None


class Cart(PartnerCenterModel):
    """A cart: created, then checked out into one or more orders (it expires after a while)."""

    id: str | None = None
    creation_timestamp: UtcDatetime | None = None
    last_modified_timestamp: UtcDatetime | None = None
    expiration_timestamp: UtcDatetime | None = None
    last_modified_user: str | None = None
    status: str | None = None
    line_items: list[CartLineItem] = Field(default_factory=list)


class OrderLineItemPricing(PartnerCenterModel):
    """Prices Partner Center reports on an order line (absent fields stay None)."""

    list_price: Decimal | None = None
    discounted_price: Decimal | None = None
    price: Decimal | None = None
    total: Decimal | None = None
    extended_price: Decimal | None = None


class OrderLineItem(PartnerCenterModel):
    """One line of an order; `subscriptionId` appears once it is provisioned."""

    line_item_number: int | None = None
    offer_id: str | None = None
    subscription_id: str | None = None
    parent_subscription_id: str | None = None
    term_duration: str | None = None
    transaction_type: str | None = None
    friendly_name: str | None = None
    quantity: int | None = None
    pricing: OrderLineItemPricing | None = None
    partner_id_on_record: str | None = None
    provisioning_context: dict[str, str] | None = None


class Order(PartnerCenterModel):
    """An order (from a cart checkout or a subscription change)."""

    id: str | None = None
    alternate_id: str | None = None
    reference_customer_id: str | None = None
    billing_cycle: str | None = None
    transaction_type: str | None = None
    currency_code: str | None = None
    currency_symbol: str | None = None
    line_items: list[OrderLineItem] = Field(default_factory=list)
    creation_date: UtcDatetime | None = None
    status: str | None = None
    attributes: ResourceAttributes | None = None


class OrderError(PartnerCenterModel):
    """An order group that could not be placed at checkout."""

    order_group_id: str | None = None
    code: int | str | None = None
    description: str | None = None


class CartCheckoutResult(PartnerCenterModel):
    """The answer to a checkout: placed orders and the groups that failed."""

    orders: list[Order] = Field(default_factory=list)
    order_errors: list[OrderError] = Field(default_factory=list)


class QuantityProvisioningStatus(PartnerCenterModel):
    """How many seats of an order line are in which provisioning state."""

    quantity: int | None = None
    status: str | None = None


class OrderLineItemProvisioningStatus(PartnerCenterModel):
    """Provisioning status of one order line (`fulfilled`, `unfulfilled`, ...)."""

    line_item_number: int | None = None
    status: str | None = None
    quantity_provisioning_information: list[QuantityProvisioningStatus] = Field(
        default_factory=list
    )


# --- subscriptions ---------------------------------------------------------------------------


class SubscriptionStatus(StrEnum):
    """Subscription states as Partner Center spells them."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"
    EXPIRED = "expired"
    PENDING = "pending"
    DISABLED = "disabled"


class RefundableQuantityDetail(PartnerCenterModel):
    """Seats that may still be removed for a refund, and until when."""

    quantity: int
    allowed_until_date_time: UtcDatetime


class RefundableQuantity(PartnerCenterModel):
    """`refundableQuantity`: the seats inside their own 7-day cancellation window."""

    total_quantity: int = 0
    details: list[RefundableQuantityDetail] = Field(default_factory=list)


class ScheduledProduct(PartnerCenterModel):
    """The product a subscription renews into."""

    product_id: str | None = None
    sku_id: str | None = None
    availability_id: str | None = None
    billing_cycle: str | None = None
    term_duration: str | None = None
    promotion_id: str | None = None


class ScheduledNextTermInstructions(PartnerCenterModel):
    """Changes applied at renewal (product, quantity, co-termed end date)."""

    product: ScheduledProduct | None = None
    quantity: int | None = None
    custom_term_end_date: UtcDatetime | None = None


class Subscription(PartnerCenterModel):
    """A customer's subscription; a PATCH sends this whole object back."""

    id: str
    entitlement_id: str | None = None
    offer_id: str | None = None
    offer_name: str | None = None
    friendly_name: str | None = None
    product_type: ItemType | None = None
    quantity: int | None = None
    unit_type: str | None = None
    parent_subscription_id: str | None = None
    creation_date: UtcDatetime | None = None
    effective_start_date: UtcDatetime | None = None
    commitment_end_date: UtcDatetime | None = None
    cancellation_allowed_until_date: UtcDatetime | None = None
    status: str | None = None
    auto_renew_enabled: bool | None = None
    billing_type: str | None = None
    billing_cycle: str | None = None
    term_duration: str | None = None
    renewal_term_duration: str | None = None
    is_trial: bool | None = None
    has_purchasable_addons: bool | None = None
    is_microsoft_product: bool | None = None
    partner_id: str | None = None
    contract_type: str | None = None
    order_id: str | None = None
    publisher_name: str | None = None
    suspension_reasons: list[str] | None = None
    refundable_quantity: RefundableQuantity | None = None
    scheduled_next_term_instructions: ScheduledNextTermInstructions | None = None
    attributes: ResourceAttributes | None = None


class TransitionError(PartnerCenterModel):
    """Why a transition is not possible."""

    code: int | str | None = None
    description: str | None = None
    type: str | None = None


class Eligibility(PartnerCenterModel):
    """`TransitionEligibilityDetail`: whether one kind of transition is possible."""

    is_eligible: bool | None = None
    transition_type: str | None = None
    errors: list[TransitionError] = Field(default_factory=list)


class TargetSubscriptionEligibility(PartnerCenterModel):
    """An existing subscription the transition could merge into."""

    is_eligible: bool | None = None
    subscription_id: str | None = None
    subscription_friendly_name: str | None = None
    subscription_term_duration: str | None = None
    subscription_billing_cycle: str | None = None
    errors: list[TransitionError] = Field(default_factory=list)


class TransitionEligibility(PartnerCenterModel):
    """A catalog item a subscription may transition to (trial → paid, upgrades)."""

    catalog_item_id: str | None = None
    title: str | None = None
    description: str | None = None
    quantity: int | None = None
    eligibilities: list[Eligibility] = Field(default_factory=list)
    subscription_eligibilities: list[TargetSubscriptionEligibility] = Field(default_factory=list)


class TransitionType(StrEnum):
    """How a transition moves licences."""

    TRANSITION_ONLY = "transition_only"
    TRANSITION_WITH_LICENSE_TRANSFER = "transition_with_license_transfer"


class Transition(PartnerCenterModel):
    """A transition request / result (`POST …/subscriptions/{s}/transitions`)."""

    id: str | None = None
    from_catalog_item_id: str | None = None
    to_catalog_item_id: str | None = None
    from_subscription_id: str | None = None
    to_subscription_id: str | None = None
    quantity: int | None = None
    term_duration: str | None = None
    billing_cycle: str | None = None
    transition_type: str | None = None
    eligibility_type: str | None = None
    status: str | None = None
    order_id: str | None = None
    creation_date: UtcDatetime | None = None


class ProductSku(PartnerCenterModel):
    """`productSku` of a subscribed SKU (the Entra licence)."""

    id: str | None = None
    name: str | None = None
    sku_part_number: str | None = None
    target_type: str | None = None


class SubscribedSku(PartnerCenterModel):
    """Licence counts of a SKU on the customer's tenant (assigned = `consumedUnits`)."""

    available_units: int | None = None
    active_units: int | None = None
    consumed_units: int | None = None
    suspended_units: int | None = None
    total_units: int | None = None
    warning_units: int | None = None
    capability_status: str | None = None
    product_sku: ProductSku | None = None


# --- usage and audit -------------------------------------------------------------------------


class AzureResource(PartnerCenterModel):
    """The meter a utilization record is about."""

    id: str | None = None
    name: str | None = None
    category: str | None = None
    subcategory: str | None = None
    region: str | None = None


class AzureUtilizationRecord(PartnerCenterModel):
    """One Azure utilization record (daily or hourly)."""

    usage_start_time: UtcDatetime | None = None
    usage_end_time: UtcDatetime | None = None
    resource: AzureResource | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    info_fields: dict[str, Any] | None = None
    instance_data: dict[str, Any] | None = None


class KeyValuePair(PartnerCenterModel):
    """`customizedData[]` of an audit record."""

    key: str | None = None
    value: str | None = None


class AuditRecord(PartnerCenterModel):
    """One audit record: what changed, on which resource, when."""

    id: str | None = None
    partner_id: str | None = None
    customer_id: str | None = None
    customer_name: str | None = None
    user_principal_name: str | None = None
    application_id: str | None = None
    resource_type: str | None = None
    resource_old_value: str | None = None
    resource_new_value: str | None = None
    operation_type: str | None = None
    operation_status: str | None = None
    operation_date: UtcDatetime | None = None
    customized_data: list[KeyValuePair] = Field(default_factory=list)
    session_id: str | None = None
    original_correlation_id: str | None = None


class CustomerQualification(PartnerCenterModel):
    """One entry of `GET /v1/customers/{id}/qualifications` (a bare JSON array of these)."""

    qualification: str | None = None
    vetting_status: str | None = None
    vetting_reason: str | None = None
    vetting_created_date: UtcDatetime | None = None


def iso_date(value: date | datetime) -> str:
    """A date or datetime as Partner Center's query strings expect it (UTC, `Z`)."""
    if isinstance(value, datetime):
        return _as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()
